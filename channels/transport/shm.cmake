# The shared-memory transport (csp/transport/shm.hpp): included by
# channels/transport/CMakeLists.txt into the csp_transport library.
# CSP_HAVE_SHM tells the transport's fork-link factory that shm is built in.
target_sources(csp_transport PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/src/shm_stream.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/shm_rendezvous.cpp)
target_compile_definitions(csp_transport PRIVATE CSP_HAVE_SHM=1)
