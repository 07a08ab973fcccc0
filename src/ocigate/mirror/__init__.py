"""Copying between registries: ``ocigate mirror`` and the server's scheduled ``sync:``.

- ``endpoints``: ``[scheme://]HOST[:PORT][/PREFIX]``, credentials, each end as a Registry;
- ``plan``: repository globs, tag and platform filters, the options and the summary;
- ``engine``: the copy itself, between any two Registry objects;
- ``progress``: rich bars on a terminal, log lines otherwise;
- ``command``: the CLI command around them.
"""
