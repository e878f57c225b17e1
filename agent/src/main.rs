fn main() {
    eprintln!("hamail-agent: not implemented yet");
    std::process::exit(2);
}
