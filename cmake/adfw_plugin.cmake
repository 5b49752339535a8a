# adfw_add_plugin(<name> <sources...>): a shared module adfw can load with
# `--plugin <file>`, from ADFW_PLUGIN_PATH, or from <prefix>/lib/adfw/plugins.
function(adfw_add_plugin name)
  add_library(${name} MODULE ${ARGN})
  target_link_libraries(${name} PRIVATE adfw::adfw)
  set_target_properties(${name} PROPERTIES PREFIX "" CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON)
endfunction()
