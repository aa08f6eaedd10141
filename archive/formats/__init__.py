"""Reading model file formats: safetensors and GGUF layouts, and what a config.json says about a model."""
