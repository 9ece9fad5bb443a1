# chunkfly-mount's blob backends against real servers (docker-registry, token server,
# chunkfly-peer and its mirror), driven by backend_read. Included from this folder's
# CMakeLists.txt so the FUSE reader's tests can live beside them.
add_executable(backend_read ${CMAKE_CURRENT_LIST_DIR}/backend_read.c)
target_link_libraries(backend_read PRIVATE mount_backend Threads::Threads)
set_target_properties(backend_read PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
foreach(t backend_registry backend_proxy)
  cf_add_script_test(${t} SCRIPT ${CMAKE_CURRENT_LIST_DIR}/${t}.sh LABELS server TIMEOUT 120)
endforeach()
