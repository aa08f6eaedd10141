"""Writing a snapshot's description for other tools: CycloneDX ML-BOM and Hugging Face model cards."""
