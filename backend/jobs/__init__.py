"""Job kinds: typed functions of (params, context) -> result, independent of sockets."""
