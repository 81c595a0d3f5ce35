"""What a worker never runs: replay, verify and rebuild, the simulator and its workload, the
demo, the supervisor of local workers, the Kafka client the tools and tests share, progress
bars. A worker imports none of it (``tests/unit/test_contract.py``)."""
