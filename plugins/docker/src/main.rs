fn main() -> anyhow::Result<()> {
    anyhow::bail!("the docker plugin is not built yet")
}
