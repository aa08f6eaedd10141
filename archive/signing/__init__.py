"""Keys and signature bundles (OpenSSF model-signing format): making, verifying and trusting them."""
