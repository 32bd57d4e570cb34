fn main() -> anyhow::Result<()> {
    anyhow::bail!("the local plugin is not built yet")
}
