"""What a payment is made in: the token on each network murano accepts, and USD → the
token's atomic units.

Prices are USD (`Charge.total_usd`); an x402 `exact` payment is a whole number of the
token's smallest unit. The token's EIP-712 domain (`name`, `version`) goes into every
requirement's `extra`: the payer signs over it, so a wrong name or version would make every
signature invalid. It comes from the x402 package's table of default assets, so a custom
`x402_asset` must be one the package knows on that network.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from x402.mechanisms.evm.default_assets import find_default_asset, get_default_asset
from x402.mechanisms.evm.v1.constants import V1_NETWORK_CHAIN_IDS

__all__ = ["Asset", "legacy_network", "resolve_assets", "to_atomic", "to_usd"]

# x402 v1 names networks ("base", "base-sepolia"); v2 uses CAIP-2 ("eip155:8453").
_LEGACY_NAMES = {f"eip155:{chain}": name for name, chain in V1_NETWORK_CHAIN_IDS.items()}


@dataclass(frozen=True, slots=True)
class Asset:
    """A token on one network, with what the payer's signature commits to."""

    network: str
    address: str
    name: str
    version: str
    decimals: int
    symbol: str

    @property
    def eip712_domain(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version}


def legacy_network(network: str) -> str | None:
    """The x402 v1 name of a CAIP-2 network (`eip155:84532` → `base-sepolia`), if any."""
    return _LEGACY_NAMES.get(network)


def resolve_assets(networks: list[str], asset: str | None) -> list[Asset]:
    """One `Asset` per network: `asset` when given, else the network's default (USDC on
    Base). ValueError, naming the network and the fix, when either is unknown."""
    if not networks:
        raise ValueError("x402_networks is empty; name at least one, e.g. eip155:8453 (Base)")
    return [_resolve(network, asset) for network in networks]


def _resolve(network: str, asset: str | None) -> Asset:
    if not network.startswith("eip155:"):
        raise ValueError(
            f"x402 network {network!r} is not supported: murano takes EVM networks in CAIP-2 "
            "form (eip155:8453 for Base, eip155:84532 for Base Sepolia)"
        )
    if asset is None:
        try:
            entry = get_default_asset(network)
        except ValueError:
            raise ValueError(
                f"x402 network {network!r} has no default asset; set x402_asset"
            ) from None
    else:
        found = find_default_asset(asset, network)
        if found is None:
            raise ValueError(
                f"x402_asset {asset} is not a token the x402 package knows on {network}; "
                "use the network's USDC (leave x402_asset unset)"
            )
        entry = found
    return Asset(
        network=network,
        address=entry["asset"],
        name=entry["name"],
        version=entry["version"],
        decimals=entry["decimals"],
        symbol=entry["symbol"],
    )


def to_atomic(usd: Decimal, decimals: int) -> int:
    """`usd` in the token's smallest unit, rounded up: a price finer than one unit is
    never undercharged (the accounts ledger rounds charges the same way)."""
    if usd < 0:
        raise ValueError(f"a price cannot be negative: {usd}")
    return int((usd.scaleb(decimals)).to_integral_value(rounding=ROUND_CEILING))


def to_usd(atomic: int, decimals: int) -> Decimal:
    return Decimal(atomic).scaleb(-decimals)
