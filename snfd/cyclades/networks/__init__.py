"""The network service (Cyclades' Network API, a Neutron subset; reference
3.3): networks, subnets, ports and floating IPs over Ganeti networks.

- ``model``: the values (``Network``, ``Subnet``, ``Port``, ``IP``) and the
  network flavors;
- ``pools``: the pure rules of the pools (MAC prefixes, bridges,
  addresses, SLAAC) and of subnet requests;
- ``store``: the SQL;
- ``service``: what requests do (``Networks``): quota through the
  commission runner, allocation under locks, ports of servers;
- ``ganeti``: networks and NICs in Ganeti (``GanetiNetworks``);
- ``api``: the ``/network/v2.0`` HTTP routes and Neutron's JSON.
"""
