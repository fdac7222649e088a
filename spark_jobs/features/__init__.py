"""Silver events -> recsys.user_features and recsys.item_features (incremental, decayed, exactly once)."""
