"""The inference service: serves each tenant's deployed model (workers/training/served.ServedModel, with its
FAISS index when the family has item vectors); the target of tenant_model_training."""
