"""Metadata on PostgreSQL (through asyncpg): the ``MetadataStore`` port, its event outbox, the
object store's ledger, and the schema migrations they share; any number of replicas share one
database."""
