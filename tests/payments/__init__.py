"""x402 payment tests."""

import warnings

# web3 7 (imported by x402's EVM mechanism) imports websockets.legacy, deprecated since
# websockets 14: not murano's warning. The package is imported before its conftest.
warnings.filterwarnings(
    "ignore", message="websockets.legacy is deprecated", category=DeprecationWarning
)
