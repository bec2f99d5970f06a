"""x402 payment tests."""
