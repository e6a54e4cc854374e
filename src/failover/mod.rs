//! The sans-IO RFC 8156 failover endpoint.
