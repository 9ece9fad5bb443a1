# chunkfly-mount's config parser (mount/backend).
cf_add_fuzzer(fuzz_mount_config SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz_mount_config.c
              LIBS mount_backend)
