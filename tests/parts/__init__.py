"""Real servers the tests run against (S3, and more), started by session fixtures."""
