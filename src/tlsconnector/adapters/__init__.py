"""Adapters: tlsconnector's decisions inside real mail servers (edges, layer 4).

Each adapter translates what one mail server knows about an SMTP transaction into
session facts, asks the pure core for a decision, and turns the decision back into
that server's own answer. The protocol parsing and the fact mapping of an adapter
are pure and tested without sockets; the I/O lives in the servers that use them.

One room per mail server or client:

* :mod:`tlsconnector.adapters.postfix`: Postfix's SMTP access policy delegation
  protocol (``check_policy_service``) and the service ``tlsconnector serve postfix``;
* :mod:`tlsconnector.adapters.aiosmtpd`: a handler for aiosmtpd servers;
* :mod:`tlsconnector.adapters.smtp`: delivering from Python with outbound connectors
  enforced in band (``deliver``), and the chain-collecting step for other clients;
* ``tlsconnector.adapters._probe``: the engine of ``tlsconnector probe``.

Importing ``tlsconnector`` never imports an adapter.
"""
