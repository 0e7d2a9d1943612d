"""tenant_model_training's work: validate data, train ALS embeddings, build and gate a FAISS index, deploy."""
