fn main() {
    println!("docker bench: not written yet");
}
