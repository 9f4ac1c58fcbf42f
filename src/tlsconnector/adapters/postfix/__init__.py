"""tlsconnector inside Postfix: the policy protocol and its server, one room each.

* :mod:`~tlsconnector.adapters.postfix.protocol`: Postfix's SMTP access policy
  delegation protocol without sockets (framing, facts, the decision's reply); its
  public names are re-exported here, as ``tlsconnector.adapters.postfix.NAME``.
* :mod:`~tlsconnector.adapters.postfix.server`: the asyncio service that
  ``tlsconnector serve postfix`` runs (sockets, clock, signals, workers, the log).
"""

from tlsconnector.adapters.postfix import protocol
from tlsconnector.adapters.postfix.protocol import *  # noqa: F403 (the protocol's public names)

__all__ = protocol.__all__

# The public path in tracebacks and in the API reference (the protocol's room is an
# implementation detail).
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type) or callable(_value):
        _value.__module__ = __name__
del _name, _value
