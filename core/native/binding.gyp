{
  "targets": [
    {
      "target_name": "splice_relay",
      "sources": ["splice_relay.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
