"""The inference service: serves each tenant's deployed FAISS index; the target of tenant_model_training."""
