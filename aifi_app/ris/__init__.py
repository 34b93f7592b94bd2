"""HL7 v2 to the RIS: result (ORU^R01) and order-priority (OMG^O19) messages, a persistent
outbox, and an MLLP sender that checks every ACK."""
