"""CNI: render a space's network configuration, run its plugins, read their results."""

from kukeon.runtime.network.cni.config import (
    CNI_VERSION,
    LOOPBACK_NETWORK,
    NetworkConfigList,
    gateway_of,
    load_conflist,
    parse_conflist,
    render_loopback_config,
    render_space_conflist,
    write_conflist,
)
from kukeon.runtime.network.cni.invoke import (
    DEFAULT_PLUGIN_DIRS,
    CniRuntime,
    RuntimeConf,
    plugin_stdin,
)
from kukeon.runtime.network.cni.result import (
    CniDns,
    CniInterface,
    CniIPConfig,
    CniResult,
    CniRoute,
    parse_error,
    parse_result,
)

__all__ = [
    "CNI_VERSION",
    "DEFAULT_PLUGIN_DIRS",
    "LOOPBACK_NETWORK",
    "CniDns",
    "CniIPConfig",
    "CniInterface",
    "CniResult",
    "CniRoute",
    "CniRuntime",
    "NetworkConfigList",
    "RuntimeConf",
    "gateway_of",
    "load_conflist",
    "parse_conflist",
    "parse_error",
    "parse_result",
    "plugin_stdin",
    "render_loopback_config",
    "render_space_conflist",
    "write_conflist",
]
