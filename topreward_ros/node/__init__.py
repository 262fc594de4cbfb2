"""The live scorer as ROS 2 nodes: ``scorer_node`` (plain) and ``managed_scorer_node`` (lifecycle).

Both are ``ScorerNodeBase`` (``base``) run in different phases. Its parts:
``intake`` (which episode a frame belongs to, without ROS), ``model_slot``
(the model, loaded in the background), ``episodes`` (the callbacks' episode
flow), ``topics`` (publishers, subscriptions, service, timers), ``health``
and ``diagnostics`` (/diagnostics), ``params`` (the parameter table),
``qos_watch`` (incompatible QoS), ``run`` and ``process_exit`` (the process
around a node).
"""
