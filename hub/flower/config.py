"""Configuration of a Flower deployment, validated before anything starts (bad input -> HTTP 400).

Names follow AI4OS's federated-server tool where it has them (rounds, strategy,
min fit/available clients, metric, differential privacy); strategy parameters
have friendly names mapped here to the constructor arguments of flwr 1.42's
Message-API strategies (``flwr.serverapp.strategy``), so the server program
receives ``strategy_kwargs`` it can pass on unchanged.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

#: Friendly parameter name -> flwr constructor argument, per strategy.
STRATEGY_PARAMS: dict[str, dict[str, str]] = {
    "FedAvg": {},
    "FedMedian": {},
    "FedProx": {"proximal_mu": "proximal_mu"},
    "FedAvgM": {"server_learning_rate": "server_learning_rate", "server_momentum": "server_momentum"},
    "FedOpt": {"server_learning_rate": "eta", "client_learning_rate": "eta_l", "tau": "tau"},
    "FedAdam": {
        "server_learning_rate": "eta",
        "client_learning_rate": "eta_l",
        "tau": "tau",
        "beta_1": "beta_1",
        "beta_2": "beta_2",
    },
    "FedYogi": {
        "server_learning_rate": "eta",
        "client_learning_rate": "eta_l",
        "tau": "tau",
        "beta_1": "beta_1",
        "beta_2": "beta_2",
    },
}
#: Parameters every strategy needs before it can do anything useful.
REQUIRED_PARAMS: dict[str, tuple[str, ...]] = {"FedProx": ("proximal_mu",)}
DEFAULT_PARAMS: dict[str, dict[str, float]] = {"FedProx": {"proximal_mu": 0.1}}


class DPConfig(BaseModel):
    """Server-side differential privacy with fixed clipping (flwr ``DifferentialPrivacyServerSideFixedClipping``)."""

    model_config = ConfigDict(extra="forbid")
    clipping_norm: float = Field(gt=0, description="L2 norm the clients' updates are clipped to")
    noise_multiplier: float = Field(ge=0, description="Gaussian noise std = noise_multiplier * clipping_norm")


class FlowerConfig(BaseModel):
    """What a user chooses when starting the Flower tool."""

    model_config = ConfigDict(extra="forbid")
    rounds: int = Field(default=5, ge=1, le=1000, description="federated rounds")
    strategy: str = Field(default="FedAvg", description="one of " + ", ".join(STRATEGY_PARAMS))
    strategy_params: dict[str, float] = Field(
        default_factory=dict, description="e.g. proximal_mu (FedProx), server_learning_rate"
    )
    min_fit_clients: int = Field(default=2, ge=2, le=1000, description="clients that train in each round")
    min_available_clients: int = Field(default=2, ge=2, le=1000, description="clients connected before round 1")
    metric: str = Field(
        default="accuracy",
        pattern=r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$",
        description="the aggregated client metric shown as the result",
    )
    local_epochs: int = Field(default=1, ge=1, le=1000, description="epochs of local training per round")
    dp: DPConfig | None = Field(default=None, description="optional server-side DP (fixed clipping)")
    secure_aggregation: bool = Field(default=False, description="SecAgg+ (not available, see reason)")
    round_timeout: float = Field(default=3600, gt=0, le=86400, description="seconds a round waits for replies")

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        if value not in STRATEGY_PARAMS:
            raise ValueError(f"unknown strategy {value!r}: choose one of {', '.join(STRATEGY_PARAMS)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FlowerConfig:
        allowed = STRATEGY_PARAMS[self.strategy]
        unknown = sorted(set(self.strategy_params) - set(allowed))
        if unknown:
            hint = f"it takes {', '.join(allowed)}" if allowed else "it takes none"
            raise ValueError(f"strategy_params {unknown} do not apply to {self.strategy}: {hint}")
        params = {**DEFAULT_PARAMS.get(self.strategy, {}), **self.strategy_params}
        for name in REQUIRED_PARAMS.get(self.strategy, ()):
            if params.get(name, 0) <= 0:
                raise ValueError(f"{self.strategy} needs strategy_params.{name} > 0")
        for name, value in params.items():
            if name != "tau" and value < 0:
                raise ValueError(f"strategy_params.{name} must not be negative")
        self.strategy_params = params
        if self.min_available_clients < self.min_fit_clients:
            raise ValueError(
                f"min_available_clients ({self.min_available_clients}) must be at least "
                f"min_fit_clients ({self.min_fit_clients})"
            )
        if self.secure_aggregation:
            raise ValueError(
                "secure_aggregation is not available: flwr 1.42 implements SecAgg+ only for the "
                "legacy workflow API, not for the Message-API strategies this tool runs"
            )
        return self

    def server_config(self) -> dict[str, Any]:
        """What the server program reads: this config plus flwr's constructor arguments."""
        mapping = STRATEGY_PARAMS[self.strategy]
        return {**self.model_dump(), "strategy_kwargs": {mapping[k]: v for k, v in self.strategy_params.items()}}


class FlowerConfigError(ValueError):
    """A configuration that cannot be run; the message says what to fix."""


def validate_config(raw: dict[str, Any] | None) -> FlowerConfig:
    """``raw`` as a :class:`FlowerConfig`, or :class:`FlowerConfigError` with one readable line per problem."""
    try:
        return FlowerConfig.model_validate(raw or {})
    except ValidationError as e:
        problems = []
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}: {msg}" if where else msg)
        raise FlowerConfigError("invalid Flower config: " + "; ".join(problems)) from None
