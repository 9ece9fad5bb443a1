# chunkfly-mount's config and blob backends (mount/backend). Included from this folder's
# CMakeLists.txt so the FUSE reader's tests can live beside them.
cf_add_unit_test(mount_config_parse SOURCES ${CMAKE_CURRENT_LIST_DIR}/config_parse_test.c
                 LIBS mount_backend)
cf_add_unit_test(mount_backend_localfs SOURCES ${CMAKE_CURRENT_LIST_DIR}/backend_localfs_test.c
                 LIBS mount_backend)
cf_add_unit_test(mount_backend_registry SOURCES ${CMAKE_CURRENT_LIST_DIR}/backend_registry_test.c
                 LIBS mount_backend)
