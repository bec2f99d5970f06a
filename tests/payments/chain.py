"""An in-memory USDC for the x402 facilitator to settle on: balances, used EIP-3009 nonces
and the transfers made, with the contract's own checks (`transferWithAuthorization` checks
the EIP-712 signature with real secp256k1 recovery, the validity window, the nonce and
the balance, and reverts with FiatToken's messages).

`ChainSigner` is the facilitator's `FacilitatorEvmSigner`: the x402 package's exact-EVM
facilitator scheme does everything else (its own verification, simulation through
`read_contract`, broadcast through `write_contract`, the receipt's Transfer event check).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from x402.mechanisms.evm.eip712 import hash_eip3009_authorization
from x402.mechanisms.evm.exact.eip3009_utils import ERC20_TRANSFER_EVENT_TOPIC
from x402.mechanisms.evm.types import ExactEIP3009Authorization, TransactionReceipt
from x402.mechanisms.evm.verify import verify_eoa_signature

__all__ = ["BASE_SEPOLIA_USDC", "ChainSigner", "FakeUsdc", "Transfer"]

BASE_SEPOLIA_USDC = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"


@dataclass(frozen=True)
class Transfer:
    sender: str
    to: str
    value: int
    tx_hash: str


@dataclass
class FakeUsdc:
    """FiatToken v2's EIP-3009 part, on one chain."""

    address: str = BASE_SEPOLIA_USDC
    name: str = "USDC"
    version: str = "2"
    chain_id: int = 84532
    balances: dict[str, int] = field(default_factory=dict)
    used_nonces: set[tuple[str, bytes]] = field(default_factory=set)
    transfers: list[Transfer] = field(default_factory=list)
    receipts: dict[str, TransactionReceipt] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def mint(self, owner: str, amount: int) -> None:
        with self.lock:
            self.balances[owner.lower()] = self.balance_of(owner) + amount

    def balance_of(self, owner: str) -> int:
        return self.balances.get(owner.lower(), 0)

    def check(
        self,
        sender: str,
        to: str,
        value: int,
        valid_after: int,
        valid_before: int,
        nonce: bytes,
        v: int,
        r: bytes,
        s: bytes,
    ) -> None:
        """Revert (raise) exactly where the contract would."""
        now = time.time()
        if now <= valid_after:
            raise RuntimeError("execution reverted: FiatTokenV2: authorization is not yet valid")
        if now >= valid_before:
            raise RuntimeError("execution reverted: FiatTokenV2: authorization is expired")
        if (sender.lower(), nonce) in self.used_nonces:
            raise RuntimeError("execution reverted: FiatTokenV2: authorization is used or canceled")
        authorization = ExactEIP3009Authorization(
            from_address=sender,
            to=to,
            value=str(value),
            valid_after=str(valid_after),
            valid_before=str(valid_before),
            nonce="0x" + nonce.hex(),
        )
        digest = hash_eip3009_authorization(
            authorization, self.chain_id, self.address, self.name, self.version
        )
        if not verify_eoa_signature(digest, r + s + bytes([v]), sender):
            raise RuntimeError("execution reverted: FiatTokenV2: invalid signature")
        if self.balance_of(sender) < value:
            raise RuntimeError("execution reverted: ERC20: transfer amount exceeds balance")

    def transfer_with_authorization(self, *args: Any) -> str:
        with self.lock:
            self.check(*args)
            sender, to, value, _after, _before, nonce = args[:6]
            self.used_nonces.add((sender.lower(), nonce))
            self.balances[sender.lower()] = self.balance_of(sender) - value
            self.balances[to.lower()] = self.balance_of(to) + value
            tx_hash = "0x" + os.urandom(32).hex()
            self.transfers.append(Transfer(sender.lower(), to.lower(), value, tx_hash))
            self.receipts[tx_hash] = TransactionReceipt(
                status=1,
                block_number=len(self.transfers),
                tx_hash=tx_hash,
                logs=[_transfer_log(self.address, sender, to, value)],
            )
            return tx_hash


def _transfer_log(token: str, sender: str, to: str, value: int) -> dict[str, Any]:
    def topic(address: str) -> str:
        return "0x" + "0" * 24 + address.lower().removeprefix("0x")

    return {
        "address": token,
        "topics": [ERC20_TRANSFER_EVENT_TOPIC, topic(sender), topic(to)],
        "data": "0x" + value.to_bytes(32, "big").hex(),
    }


class ChainSigner:
    """The facilitator's view of the chain: only `token` has code."""

    def __init__(self, token: FakeUsdc) -> None:
        self.token = token
        self.account = Account.create()

    def get_addresses(self) -> list[str]:
        return [self.account.address]

    def get_chain_id(self) -> int:
        return self.token.chain_id

    def get_code(self, address: str) -> bytes:
        return b"\x60\x80" if address.lower() == self.token.address.lower() else b""

    def get_balance(self, address: str, token_address: str) -> int:
        return self.token.balance_of(address)

    def read_contract(self, address: str, abi: Any, function_name: str, *args: Any) -> Any:
        if address.lower() != self.token.address.lower():
            raise RuntimeError(f"execution reverted: no contract at {address}")
        if function_name == "transferWithAuthorization":
            with self.token.lock:
                self.token.check(*args)
            return None
        if function_name == "balanceOf":
            return self.token.balance_of(args[0])
        if function_name == "name":
            return self.token.name
        if function_name == "version":
            return self.token.version
        if function_name == "authorizationState":
            return (args[0].lower(), args[1]) in self.token.used_nonces
        raise RuntimeError(f"execution reverted: unknown function {function_name}")

    def write_contract(
        self,
        address: str,
        abi: Any,
        function_name: str,
        *args: Any,
        data_suffix: str | None = None,
    ) -> str:
        if address.lower() != self.token.address.lower():
            raise RuntimeError(f"execution reverted: no contract at {address}")
        if function_name != "transferWithAuthorization":
            raise RuntimeError(f"execution reverted: unknown function {function_name}")
        return self.token.transfer_with_authorization(*args)

    def send_transaction(self, to: str, data: bytes) -> str:
        raise RuntimeError("no contract deployments on the fake chain")

    def wait_for_transaction_receipt(self, tx_hash: str) -> TransactionReceipt:
        return self.token.receipts[tx_hash]

    def verify_typed_data(self, *args: Any) -> bool:
        raise NotImplementedError("the exact EIP-3009 path does not call this")
