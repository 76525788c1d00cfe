"""Several gateway nodes behind one load balancer, sharing one Redis.

Nodes are equal. Each registers itself under a heartbeat lease (``nodes``), owns the
sessions it accepted, and forwards what belongs to another node's session to the owner
(``forward``): a WHEP exchange, an RTP request, a telephony attach or a socket resuming
its session. ``voxgate serve --workers N`` is the same thing on one host: each worker is a
node reached on its own loopback port. A node whose lease lapses is reaped by a survivor
(``reaper``): its sessions' holds are refunded, its sessions removed and remembered as
lost, so that a client resuming one is told ``session_lost``.
"""
