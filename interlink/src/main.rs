fn main() -> anyhow::Result<()> {
    anyhow::bail!("the interlink API server is not built yet")
}
