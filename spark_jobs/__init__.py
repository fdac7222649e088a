"""recsys lakehouse: real-time content recommendations on Kafka, Spark, Delta and MLflow.

The package is organised by stage of the data flow; follow the folders to follow an event:
``produce`` -> Kafka -> ``ingest`` (bronze, silver, quarantine) -> features -> training -> scoring.
Shared names and configuration live in ``common``; the event contract in ``contract``.
"""

__version__ = "0.1.0"
