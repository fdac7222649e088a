"""Model training: interactions, candidate generation (ALS and others), ranker, registry, gate."""
