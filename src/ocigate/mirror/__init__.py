"""Copying between registries: ``ocigate mirror`` and the server's scheduled ``sync:``.

- ``endpoints``: ``[scheme://]HOST[:PORT][/PREFIX]``; ``credentials``: flags, environment,
  docker's and podman's auth files; ``remote``: an end opened as a Registry;
- ``plan``: repository globs, tag and platform filters, the options and the summary;
- ``engine``: the copy itself, between any two Registry objects;
- ``progress``: rich bars on a terminal, log lines otherwise;
- ``command``: the CLI command around them;
- ``config``: the ``sync:`` entries; ``schedule``: the server's job running them.
"""
