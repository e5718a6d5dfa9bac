"""The state stores: the key-value interface with its embedded (``MemoryKV``) and Redis
(``RedisKV``, with its Lua scripts and blocking-index layout) implementations, the unit-of-work
overlay (``TxKV``), the state schema (every key family, the layout version, typed codecs) and
the identity store built on them."""
