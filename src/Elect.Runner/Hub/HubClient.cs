using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text.Json;

namespace Elect.Runner.Hub;

/// <summary>One file of a Hub repository at a revision, as the listing gives it.</summary>
/// <param name="Path">The path inside the repository (<c>rfilename</c>).</param>
/// <param name="Size">Bytes, when the listing gives it (<c>size</c>, or <c>lfs.size</c>).</param>
/// <param name="Sha256">For LFS files: the content's sha256 (<c>lfs.sha256</c>), lower-case hex.</param>
/// <param name="BlobId">The git blob id (<c>blobId</c>): sha1 of <c>"blob {size}\0" + content</c>; for LFS files it is the pointer's, not the content's.</param>
public sealed record HubFile(string Path, long? Size, string? Sha256, string? BlobId)
{
    public bool IsLfs => Sha256 is not null;
}

/// <summary>A repository listing: the commit the revision resolved to and its files.</summary>
public sealed record HubRepoInfo(string RepoId, string Revision, string? Commit, IReadOnlyList<HubFile> Files);

/// <summary>A Hub request that failed: the HTTP status and a message naming the repository or file and what to do.</summary>
public sealed class HubException(string message, HttpStatusCode? status = null) : Exception(message)
{
    public HttpStatusCode? Status { get; } = status;
}

/// <summary>Progress of one file: bytes on disk so far and the total when known.</summary>
public readonly record struct HubProgress(string Path, long Bytes, long? Total);

/// <summary>
/// A client of the Hugging Face Hub's public HTTP API, written from its documented behaviour:
/// <list type="bullet">
/// <item><c>GET {endpoint}/api/models/{repo_id}/revision/{revision}?blobs=true</c> returns JSON with <c>sha</c> (the
/// commit) and <c>siblings: [{rfilename, size, blobId, lfs?: {sha256, size, pointerSize}}]</c>;</item>
/// <item><c>GET {endpoint}/{repo_id}/resolve/{revision}/{path}</c> serves a file: small files directly (<c>ETag</c> =
/// the git blob id in quotes), LFS files by a 302 to a CDN, the redirect carrying <c>X-Repo-Commit</c>,
/// <c>X-Linked-Etag</c> (the sha256 in quotes) and <c>X-Linked-Size</c>; ranges (<c>Range: bytes=N-</c>) answer 206;</item>
/// <item>private and gated repositories answer 401 / 403 (with <c>X-Error-Code</c> such as <c>GatedRepo</c>,
/// <c>RepoNotFound</c>, <c>EntryNotFound</c>, <c>RevisionNotFound</c> and <c>X-Error-Message</c>); a token goes as
/// <c>Authorization: Bearer</c>.</item>
/// </list>
/// The endpoint comes from <c>HF_ENDPOINT</c> (default <see cref="DefaultEndpoint"/>), the token from <c>HF_TOKEN</c>.
/// Downloads are resumable (a <c>.incomplete</c> file beside the target, continued with a Range request),
/// verified (sha256 for LFS files, the git blob sha1 for the others, when the listing or the headers give them)
/// and atomic (renamed onto the target only once verified). Redirects are followed by hand (at most
/// <see cref="MaxRedirects"/>), and the token is sent only to the endpoint's own host.
/// </summary>
public sealed class HubClient : IDisposable
{
    public const string DefaultEndpoint = "https://huggingface.co";

    private readonly HttpClient _http;
    private readonly Uri _endpoint;
    private readonly string? _token;

    public const int MaxRedirects = 5;

    /// <summary>Attempts per file (a cut connection is resumed from the bytes already on disk).</summary>
    public int MaxAttempts { get; init; } = 3;

    public string Endpoint => _endpoint.ToString().TrimEnd('/');

    /// <param name="endpoint">Base address; null: <c>HF_ENDPOINT</c>, else <see cref="DefaultEndpoint"/>.</param>
    /// <param name="token">Access token; null: <c>HF_TOKEN</c> (or the older <c>HUGGING_FACE_HUB_TOKEN</c>).</param>
    /// <param name="timeout">Timeout of one request without progress (default 60 s).</param>
    public HubClient(string? endpoint = null, string? token = null, TimeSpan? timeout = null)
    {
        endpoint ??= Environment.GetEnvironmentVariable("HF_ENDPOINT") is { Length: > 0 } e ? e : DefaultEndpoint;
        if (!Uri.TryCreate(endpoint.TrimEnd('/') + "/", UriKind.Absolute, out var uri) || (uri.Scheme != "http" && uri.Scheme != "https"))
            throw new ArgumentException($"HF_ENDPOINT '{endpoint}' is not an http(s) address", nameof(endpoint));
        _endpoint = uri;
        _token = token ?? (Environment.GetEnvironmentVariable("HF_TOKEN") is { Length: > 0 } t ? t
            : Environment.GetEnvironmentVariable("HUGGING_FACE_HUB_TOKEN") is { Length: > 0 } t2 ? t2 : null);
        _http = new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false, AutomaticDecompression = DecompressionMethods.None })
        {
            Timeout = timeout ?? TimeSpan.FromSeconds(60),
        };
        _http.DefaultRequestHeaders.UserAgent.Add(new ProductInfoHeaderValue("elect", "1.0"));
    }

    public void Dispose() => _http.Dispose();

    /// <summary>Checks a repository id: <c>owner/name</c> of letters, digits, '-', '_', '.'.</summary>
    public static string CheckRepoId(string repoId)
    {
        var parts = repoId.Split('/');
        if (parts.Length != 2 || parts.Any(p => p.Length == 0 || p is "." or ".." || p.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))))
            throw new ArgumentException($"'{repoId}' is not a Hub repository id (owner/name)", nameof(repoId));
        return repoId;
    }

    /// <summary>Lists the files of <paramref name="repoId"/> at <paramref name="revision"/> (with sizes and checksums).</summary>
    public async Task<HubRepoInfo> ListAsync(string repoId, string revision = "main", CancellationToken cancel = default)
    {
        CheckRepoId(repoId);
        var url = new Uri(_endpoint, $"api/models/{repoId}/revision/{Uri.EscapeDataString(revision)}?blobs=true");
        using var response = await SendAsync(url, null, repoId, null, cancel).ConfigureAwait(false);
        var body = await response.Content.ReadAsStringAsync(cancel).ConfigureAwait(false);
        try
        {
            using var doc = JsonDocument.Parse(body);
            var root = doc.RootElement;
            string? commit = root.TryGetProperty("sha", out var sha) && sha.ValueKind == JsonValueKind.String ? sha.GetString() : null;
            var files = new List<HubFile>();
            if (root.TryGetProperty("siblings", out var siblings) && siblings.ValueKind == JsonValueKind.Array)
                foreach (var s in siblings.EnumerateArray())
                {
                    var name = s.GetProperty("rfilename").GetString() ?? throw new InvalidDataException("rfilename is null");
                    long? size = s.TryGetProperty("size", out var sz) && sz.ValueKind == JsonValueKind.Number ? sz.GetInt64() : null;
                    string? blob = s.TryGetProperty("blobId", out var b) && b.ValueKind == JsonValueKind.String ? b.GetString() : null;
                    string? sha256 = null;
                    if (s.TryGetProperty("lfs", out var lfs) && lfs.ValueKind == JsonValueKind.Object)
                    {
                        sha256 = lfs.TryGetProperty("sha256", out var h) ? h.GetString()?.ToLowerInvariant() : null;
                        if (lfs.TryGetProperty("size", out var ls) && ls.ValueKind == JsonValueKind.Number) size = ls.GetInt64();
                    }
                    files.Add(new HubFile(CheckPath(name, repoId), size, sha256, blob));
                }
            return new HubRepoInfo(repoId, revision, commit, files);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new HubException($"{url}: the Hub's answer is not a repository listing ({e.Message})");
        }
    }

    /// <summary>
    /// Lists <paramref name="repoId"/>, picks the files (<see cref="HubSelection.Select"/>: for a diffusers pipeline
    /// its <c>model_index.json</c> is fetched first to learn the components) and downloads them into
    /// <paramref name="localDir"/>. Returns the selected files.
    /// </summary>
    public async Task<IReadOnlyList<HubFile>> DownloadRepoAsync(string repoId, string localDir, string revision = "main", string precision = "fp16",
        IReadOnlyList<string>? include = null, Action<string>? log = null, IProgress<HubProgress>? progress = null, CancellationToken cancel = default)
    {
        var repo = await ListAsync(repoId, revision, cancel).ConfigureAwait(false);
        log?.Invoke($"{repoId} at {revision}{(repo.Commit is { } c && c != revision ? $" (commit {c})" : "")}: {repo.Files.Count} files listed");
        string? modelIndex = null;
        if (include is not { Count: > 0 } && repo.Files.FirstOrDefault(f => f.Path == "model_index.json") is { } index)
        {
            await DownloadAsync(repo, index, localDir, progress, cancel).ConfigureAwait(false);
            modelIndex = await File.ReadAllTextAsync(Path.Combine(localDir, index.Path), cancel).ConfigureAwait(false);
        }
        var selected = HubSelection.Select(repo.Files, modelIndex, precision, include);
        if (selected.Count == 0)
            throw new HubException($"{repoId}: no file to download{(include is { Count: > 0 } ? $" matches --include {string.Join(' ', include)}" : "")}");
        long total = selected.Sum(f => f.Size ?? 0);
        log?.Invoke($"downloading {selected.Count} of {repo.Files.Count} files ({FormatBytes(total)}) to {localDir}");
        foreach (var f in selected)
        {
            bool fetched = await DownloadAsync(repo, f, localDir, progress, cancel).ConfigureAwait(false);
            log?.Invoke($"{(fetched ? "downloaded" : "already there")} {f.Path} ({FormatBytes(f.Size ?? new FileInfo(Path.Combine(localDir, f.Path)).Length)}, {(f.IsLfs ? "sha256" : f.BlobId is not null ? "git blob id" : "no checksum")} {(f.Sha256 is not null || f.BlobId is not null ? "verified" : "given")})");
        }
        return selected;
    }

    /// <summary>"1.2 GB", "340 MB", "12 kB", "7 B".</summary>
    public static string FormatBytes(long bytes) => bytes switch
    {
        >= 1_000_000_000 => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{bytes / 1e9:F1} GB"),
        >= 1_000_000 => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{bytes / 1e6:F0} MB"),
        >= 1_000 => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{bytes / 1e3:F0} kB"),
        _ => $"{bytes} B",
    };

    /// <summary>
    /// Downloads <paramref name="file"/> to <paramref name="localDir"/>/<c>file.Path</c>: skipped when the target
    /// already has the listed size and checksum; else continued from <c>target.incomplete</c>, verified and renamed.
    /// Returns whether bytes were transferred.
    /// </summary>
    public async Task<bool> DownloadAsync(HubRepoInfo repo, HubFile file, string localDir, IProgress<HubProgress>? progress = null, CancellationToken cancel = default)
    {
        var target = Path.GetFullPath(Path.Combine(localDir, file.Path));
        var root = Path.GetFullPath(localDir).TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar;
        if (!target.StartsWith(root, StringComparison.Ordinal))
            throw new HubException($"{repo.RepoId}: file '{file.Path}' would land outside {localDir}");
        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        if (File.Exists(target) && (file.Size is null || new FileInfo(target).Length == file.Size) && Verify(target, file) is null)
        {
            progress?.Report(new HubProgress(file.Path, new FileInfo(target).Length, file.Size));
            return false;
        }
        var partial = target + ".incomplete";
        var revision = repo.Commit ?? repo.Revision;   // every file from the same commit
        var url = new Uri(_endpoint, $"{repo.RepoId}/resolve/{Uri.EscapeDataString(revision)}/{string.Join('/', file.Path.Split('/').Select(Uri.EscapeDataString))}");
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                var etag = await FetchAsync(url, repo.RepoId, file, partial, progress, cancel).ConfigureAwait(false);
                // a listing without checksums (a mirror that ignores ?blobs=true): the resolve answer's
                // X-Linked-Etag (LFS: the sha256) or ETag (the git blob id) stands in
                if (file.Sha256 is null && file.BlobId is null && etag is not null)
                    file = etag.Length == 64 ? file with { Sha256 = etag } : etag.Length == 40 ? file with { BlobId = etag } : file;
                break;
            }
            catch (Exception e) when (attempt < MaxAttempts && !cancel.IsCancellationRequested && e is IOException or HttpRequestException or TaskCanceledException)
            {
                // a cut connection or a stalled request: try again, continuing from what is on disk
            }
            catch (Exception e) when (e is IOException or HttpRequestException or TaskCanceledException && !cancel.IsCancellationRequested)
            {
                throw new HubException($"{repo.RepoId}: downloading '{file.Path}' failed after {attempt} attempt(s): {e.Message} (run the command again to resume from {(File.Exists(partial) ? new FileInfo(partial).Length : 0)} bytes)");
            }
        }
        if (file.Size is { } size && new FileInfo(partial).Length != size)
        {
            long got = new FileInfo(partial).Length;
            File.Delete(partial);
            throw new HubException($"{repo.RepoId}: '{file.Path}' has {got} bytes, the listing says {size}; the partial file was removed, run the command again");
        }
        if (Verify(partial, file) is { } mismatch)
        {
            File.Delete(partial);
            throw new HubException($"{repo.RepoId}: checksum mismatch for '{file.Path}': {mismatch}; the corrupted download was removed, run the command again");
        }
        File.Move(partial, target, overwrite: true);
        return true;
    }

    /// <summary>Fetches into <paramref name="partial"/>; returns the first answer's X-Linked-Etag or ETag (unquoted, lower case), if any.</summary>
    private async Task<string?> FetchAsync(Uri url, string repoId, HubFile file, string partial, IProgress<HubProgress>? progress, CancellationToken cancel)
    {
        long have = File.Exists(partial) ? new FileInfo(partial).Length : 0;
        if (file.Size is { } size && have > size) { File.Delete(partial); have = 0; }
        if (file.Size is { } complete && have == complete && complete > 0) return null;   // everything arrived before the cut
        var (response, etag) = await SendWithEtagAsync(url, have > 0 ? have : null, repoId, file.Path, cancel).ConfigureAwait(false);
        using var _ = response;
        bool append = have > 0 && response.StatusCode == HttpStatusCode.PartialContent;
        if (!append) have = 0;   // the server ignored the range: start again
        long? total = file.Size ?? (response.Content.Headers.ContentLength is { } len ? len + have : null);
        await using var body = await response.Content.ReadAsStreamAsync(cancel).ConfigureAwait(false);
        await using var output = new FileStream(partial, append ? FileMode.Append : FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16);
        var buffer = new byte[1 << 16];
        long lastReport = 0, received = 0;
        int n;
        while ((n = await body.ReadAsync(buffer, cancel).ConfigureAwait(false)) > 0)
        {
            await output.WriteAsync(buffer.AsMemory(0, n), cancel).ConfigureAwait(false);
            have += n;
            received += n;
            if (have - lastReport >= 1 << 22) { progress?.Report(new HubProgress(file.Path, have, total)); lastReport = have; }
        }
        await output.FlushAsync(cancel).ConfigureAwait(false);
        progress?.Report(new HubProgress(file.Path, have, total));
        if (response.Content.Headers.ContentLength is { } expected && received != expected)
            throw new IOException($"the connection ended after {received} of {expected} bytes");
        return etag;
    }

    /// <summary>
    /// Sends a GET (with a Range from <paramref name="from"/> when given), following redirects by hand; the token goes
    /// only to the endpoint's host. Non-success answers become <see cref="HubException"/>s naming the repository,
    /// the file and what to do.
    /// </summary>
    private async Task<HttpResponseMessage> SendAsync(Uri url, long? from, string repoId, string? path, CancellationToken cancel) =>
        (await SendWithEtagAsync(url, from, repoId, path, cancel).ConfigureAwait(false)).Response;

    private async Task<(HttpResponseMessage Response, string? Etag)> SendWithEtagAsync(Uri url, long? from, string repoId, string? path, CancellationToken cancel)
    {
        string? etag = null;
        for (int hop = 0; ; hop++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, url);
            if (_token is not null && url.Host == _endpoint.Host && url.Port == _endpoint.Port)
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _token);
            if (from is { } f) request.Headers.Range = new RangeHeaderValue(f, null);
            var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel).ConfigureAwait(false);
            int code = (int)response.StatusCode;
            if (hop == 0 && (response.Headers.TryGetValues("X-Linked-Etag", out var tags) || response.Headers.TryGetValues("ETag", out tags)))
                etag = tags.First().Replace("W/", "", StringComparison.Ordinal).Trim('"').ToLowerInvariant();
            if (code is 301 or 302 or 303 or 307 or 308)
            {
                var location = response.Headers.Location;
                response.Dispose();
                if (location is null) throw new HubException($"{url}: redirect without a Location", (HttpStatusCode)code);
                if (hop >= MaxRedirects) throw new HubException($"{url}: more than {MaxRedirects} redirects");
                url = location.IsAbsoluteUri ? location : new Uri(url, location);
                continue;
            }
            if (response.IsSuccessStatusCode) return (response, etag);
            string message = await ErrorMessage(response, cancel).ConfigureAwait(false);
            var what = path is null ? $"repository {repoId}" : $"'{path}' of {repoId}";
            var page = $"{Endpoint}/{repoId}";
            string errorCode = response.Headers.TryGetValues("X-Error-Code", out var codes) ? codes.First() : "";
            response.Dispose();
            throw code switch
            {
                401 or 403 when errorCode == "GatedRepo" || message.Contains("gated", StringComparison.OrdinalIgnoreCase) || message.Contains("restricted", StringComparison.OrdinalIgnoreCase) =>
                    new HubException($"{repoId} is a gated repository (HTTP {code}{Detail(message)}): accept its licence at {page} while logged in, then set HF_TOKEN to an access token of that account ({Endpoint}/settings/tokens)", (HttpStatusCode)code),
                401 => new HubException($"HTTP 401 for {what}{Detail(message)}: the repository is private, gated or does not exist; " +
                    (_token is null ? $"set HF_TOKEN to an access token ({Endpoint}/settings/tokens) if you have access" : "HF_TOKEN was sent and refused: check the token and that its account has access to " + page), (HttpStatusCode)code),
                403 => new HubException($"HTTP 403 for {what}{Detail(message)}: access refused; accept the repository's conditions at {page} and check that HF_TOKEN's account has access", (HttpStatusCode)code),
                404 => new HubException(errorCode switch
                {
                    "RevisionNotFound" => $"revision not found in {repoId}{Detail(message)}",
                    "EntryNotFound" => $"{what} not found{Detail(message)}",
                    _ => $"HTTP 404 for {what}{Detail(message)}: check the repository id ({page}), the revision and the path",
                }, (HttpStatusCode)code),
                416 => new IOException($"HTTP 416 for {what}: the partial file does not fit the remote one"),
                >= 500 => new IOException($"HTTP {code} for {what}{Detail(message)}"),
                _ => new HubException($"HTTP {code} for {what}{Detail(message)}", (HttpStatusCode)code),
            };
        }
    }

    private static string Detail(string message) => message.Length == 0 ? "" : $": {message}";

    private static async Task<string> ErrorMessage(HttpResponseMessage response, CancellationToken cancel)
    {
        if (response.Headers.TryGetValues("X-Error-Message", out var m)) return m.First();
        try
        {
            var text = await response.Content.ReadAsStringAsync(cancel).ConfigureAwait(false);
            if (text.Length > 0 && text.TrimStart().StartsWith('{'))
            {
                using var doc = JsonDocument.Parse(text);
                if (doc.RootElement.TryGetProperty("error", out var e) && e.ValueKind == JsonValueKind.String) return e.GetString() ?? "";
            }
            return text.Length > 200 ? "" : text.Trim();
        }
        catch (Exception e) when (e is JsonException or IOException or HttpRequestException)
        {
            return "";
        }
    }

    /// <summary>Null when <paramref name="path"/> matches the file's checksum (or none is known), else what differs.</summary>
    public static string? Verify(string path, HubFile file)
    {
        if (file.Sha256 is { } expected)
        {
            using var s = File.OpenRead(path);
            var got = Convert.ToHexStringLower(SHA256.HashData(s));
            return got == expected ? null : $"sha256 {got}, expected {expected}";
        }
        if (file.BlobId is { Length: 40 } blob)
        {
            using var s = File.OpenRead(path);
            using var sha1 = IncrementalHash.CreateHash(HashAlgorithmName.SHA1);
            sha1.AppendData(System.Text.Encoding.ASCII.GetBytes($"blob {s.Length}\0"));
            var buffer = new byte[1 << 16];
            int n;
            while ((n = s.Read(buffer)) > 0) sha1.AppendData(buffer, 0, n);
            var got = Convert.ToHexStringLower(sha1.GetHashAndReset());
            return got == blob.ToLowerInvariant() ? null : $"git blob id {got}, expected {blob}";
        }
        return null;
    }

    private static string CheckPath(string path, string repoId)
    {
        if (path.Length == 0 || path.StartsWith('/') || path.Contains('\\') || path.Split('/').Any(p => p is "" or "." or ".."))
            throw new HubException($"{repoId}: refusing the listed file name '{path}'");
        return path;
    }
}
