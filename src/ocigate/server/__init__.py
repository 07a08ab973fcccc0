"""The built-in HTTP/1.1 server (``server: builtin``): a connection protocol and its workers."""
