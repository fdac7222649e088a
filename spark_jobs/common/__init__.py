"""Names, configuration, the Spark session factory and console helpers shared by every stage."""
