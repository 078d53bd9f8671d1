//! Entry point: the command line lives in `mcp_gateway::cli`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(mcp_gateway::cli::main_with_args(args));
}
