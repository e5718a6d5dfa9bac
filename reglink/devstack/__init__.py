"""The local development stack: Kafka (KRaft, jars via Maven) and Redis started on loopback,
the Docker Compose settings, the private TLS authority, and the live demo."""
