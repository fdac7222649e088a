"""The local stack: processes that ``recsys stack up`` runs on a laptop (today: one Kafka broker).

Local profile only. On a cluster the platform provides the broker; these modules are not used.
"""
