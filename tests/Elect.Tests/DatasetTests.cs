using Elect.Datasets;
using Elect.Selection;
using Elect.Runner;
using Xunit;

namespace Elect.Tests;

public sealed class DatasetTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("elect-ds-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void ReadsPieBenchMappingWithImagesUnderAnnotationImages()
    {
        File.WriteAllText(Path.Combine(_dir, EditDataset.PieBenchFile), """
        {
          "000000000000": {"image_path": "0_random_140/000000000000.jpg", "original_prompt": "a cat", "editing_prompt": "a bear",
                           "editing_instruction": "Make the cat a bear", "editing_type_id": "0", "blended_word": "cat bear", "mask": [10, 3, 20, 2]},
          "000000000001": {"image_path": "0_random_140/000000000001.jpg", "editing_instruction": 5},
          "../evil": {"image_path": "x.jpg", "editing_instruction": "x"}
        }
        """);
        var (items, bad, format) = EditDataset.Load(_dir);
        Assert.Equal("pie-bench", format);
        var item = Assert.Single(items);
        Assert.Equal("000000000000", item.Key);
        Assert.Equal(Path.Combine(_dir, "annotation_images", "0_random_140", "000000000000.jpg"), item.ImagePath);
        Assert.Equal("Make the cat a bear", item.Instruction);
        Assert.Equal([10, 3, 20, 2], item.MaskRle!);
        Assert.Equal(["../evil", "000000000001"], bad.Select(b => b.Key).Order(StringComparer.Ordinal).ToArray());
        Assert.Contains("editing_instruction", bad.Single(b => b.Key == "000000000001").Error);
    }

    [Fact]
    public void GenericMapResolvesRelativePathsAgainstTheDatasetFolder()
    {
        File.WriteAllText(Path.Combine(_dir, EditDataset.GenericFile), """{"a": {"image_path": "imgs/a.png", "editing_instruction": "x"}, "b": {"image_path": "/abs/b.png", "editing_instruction": "y"}}""");
        var (items, bad, format) = EditDataset.Load(_dir);
        Assert.Equal("generic", format);
        Assert.Empty(bad);
        Assert.Equal(Path.Combine(_dir, "imgs", "a.png"), items[0].ImagePath);
        Assert.Equal("/abs/b.png", items[1].ImagePath);
    }

    [Fact]
    public void MissingOrCorruptMapsAreNamed()
    {
        Assert.Contains("no mapping_file.json", Assert.Throws<FileNotFoundException>(() => EditDataset.Load(_dir)).Message);
        File.WriteAllText(Path.Combine(_dir, EditDataset.GenericFile), "{ not json");
        Assert.Contains("dataset.json: not valid JSON", Assert.Throws<InvalidDataException>(() => EditDataset.Load(_dir)).Message);
        Assert.Throws<DirectoryNotFoundException>(() => EditDataset.Load(Path.Combine(_dir, "nope")));
    }

    [Fact]
    public void MemoryTrendSummarisesEachReadingPresentInEveryItem()
    {
        MemorySnapshot Snap(double rss, long live, double? gpu) => new() { ProcessRssMib = rss, LiveTensors = live, GpuUsedMib = gpu };
        var trend = MemoryProbe.Trend([Snap(300, 40, 900), Snap(512.5, 40, 950), Snap(310, 41, null)]);
        Assert.Equal(3, trend.Items);
        var rss = trend.ProcessRssMib!;
        Assert.Equal([300, 310, 300, 512.5, 10], new[] { rss.First, rss.Last, rss.Min, rss.Max, rss.Growth });
        Assert.Equal(1, trend.LiveTensors!.Growth);
        Assert.Null(trend.GpuUsedMib);   // missing from one item: no trend rather than a misleading one
        Assert.Equal(0, MemoryProbe.Trend([]).Items);
    }
}
