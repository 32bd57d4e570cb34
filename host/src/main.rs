fn main() -> anyhow::Result<()> {
    anyhow::bail!("the CRI host is not built yet")
}
