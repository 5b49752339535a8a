// How every `adfw` sub-command reads its arguments, so that all of them accept --help, report a
// syntax error the same way (a ConfigError, exit 2, with the usage line) and document their
// options in one format.
#pragma once

#include <string>
#include <vector>

#include <boost/program_options.hpp>

namespace adfw::cli {

/// Parses `args` (those after the command name). `shown` are the options --help lists (this adds
/// --help itself); `hidden` those only given by position (`pos` names them). With --help it
/// prints "usage: <usage>", `help_text` when given, and the options, and the returned map holds
/// "help", on which the command returns 0. Required options are not enforced under --help.
boost::program_options::variables_map parse_command(const std::vector<std::string>& args,
                                                    boost::program_options::options_description& shown,
                                                    const boost::program_options::positional_options_description& pos,
                                                    const std::string& usage,
                                                    const boost::program_options::options_description& hidden = {},
                                                    const std::string& help_text = "");

}  // namespace adfw::cli
