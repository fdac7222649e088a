"""The model registry (MLflow): logging and registering versions, the champion/challenger aliases,
loading what is served, and the promotion gate. Training writes through it; serving and drift
read through it, so neither depends on how models are trained."""
