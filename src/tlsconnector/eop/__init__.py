"""Exchange Online Protection exports in, tlsconnector policies out (an edge).

:mod:`~tlsconnector.eop.importing` reads ``Get-InboundConnector`` /
``Get-OutboundConnector | ConvertTo-Json`` exports (any encoding PowerShell writes)
and converts them into a policy with every key explicit, never weaker than the
export; ``tlsconnector import-eop`` is its command.
"""
