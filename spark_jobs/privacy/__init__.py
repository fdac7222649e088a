"""GDPR erasure: record requests, erase a user from every table that holds them, vacuum, audit."""
