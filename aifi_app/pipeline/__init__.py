"""The work between receiving and delivering: completion, routing, processing, delivery."""
