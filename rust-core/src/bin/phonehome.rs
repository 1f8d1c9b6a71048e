fn main() {
    std::process::exit(phonehome::cli::main());
}
