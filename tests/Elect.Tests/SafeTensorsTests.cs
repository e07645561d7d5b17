using Elect.Modeling;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Elect.Tests;

public class SafeTensorsTests
{
    [SkippableFact]
    public void GoldenFileLoadsWithAllDtypes()
    {
        var root = Fixtures.Require();
        var (infos, _) = SafeTensors.ReadHeader(Path.Combine(root, "golden.safetensors"));
        Assert.Contains(infos, i => i.DType == "U8");
        Assert.Contains(infos, i => i.DType == "I64");
        Assert.Contains(infos, i => i.DType == "F64");
        var seeds = Fixtures.Golden("ip2p.elect.seeds");
        Assert.Equal(new long[] { 11, 22, 33, 44, 55 }, seeds.data<long>().ToArray());
    }
}
