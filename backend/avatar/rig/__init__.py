"""Rigging: body-part labels and SMPL-X skinning weights transferred to the sculpted mesh."""
