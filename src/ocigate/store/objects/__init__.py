"""The objects backend: blob bytes in S3-compatible object storage, everything else in
PostgreSQL, shared by any number of stateless replicas."""
